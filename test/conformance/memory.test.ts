import { brokerOptions, brokerSelected } from '../helpers.js'
import { conformance } from './suite.js'

if (brokerSelected('memory')) {
  conformance({ kind: 'memory', options: brokerOptions('memory'), features: { newGroupReadsHistory: true } })
}
