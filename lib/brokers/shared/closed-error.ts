import { BrokerError, ErrorCode } from '../../errors.js'

/** What every adapter answers once it was closed: not retriable, with the one way out. */
export function brokerClosedError (broker: string): BrokerError {
  return new BrokerError(`the ${broker} broker is closed; create a new Messaging instance`, { code: ErrorCode.BrokerClosed, retriable: false })
}
