// Herald's own amqplib (the repo's root install), for the runner and the raw contenders: the
// peers need the older amqplib in bench/node_modules (Moleculer reads its package.json,
// which amqplib 2 no longer exports), and the raw loops must use the client Herald uses.
import { createRequire } from 'node:module'
import type * as Amqp from '../node_modules/amqplib/index.js'

export type { Channel, ChannelModel, ConfirmChannel, Options } from '../node_modules/amqplib/index.js'

const fromRoot = createRequire(new URL('../package.json', import.meta.url))
const amqplib = fromRoot('amqplib') as typeof Amqp
export default amqplib
