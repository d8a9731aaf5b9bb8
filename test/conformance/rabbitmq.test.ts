import { brokerOptions, brokerSelected } from '../helpers.js'
import { conformance } from './suite.js'

if (brokerSelected('rabbitmq')) {
  conformance({ kind: 'rabbitmq', options: brokerOptions('rabbitmq'), features: { newGroupReadsHistory: false } })
}
