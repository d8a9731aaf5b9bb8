import { brokerOptions, brokerSelected } from '../helpers.js'
import { conformance } from './suite.js'

if (brokerSelected('redis')) {
  conformance({ kind: 'redis', options: brokerOptions('redis'), features: { newGroupReadsHistory: true } })
}
