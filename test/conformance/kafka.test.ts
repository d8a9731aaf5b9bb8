import { brokerOptions, brokerSelected } from '../helpers.js'
import { conformance } from './suite.js'

if (brokerSelected('kafka')) {
  conformance({ kind: 'kafka', options: brokerOptions('kafka'), features: { newGroupReadsHistory: true } })
}
