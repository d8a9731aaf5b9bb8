// Raw ioredis, as a careful engineer writes it. Producer: XADD with the fields Herald writes
// (data, key, headers), auto-pipelined so sends made together share a round trip. Consumer:
// XREADGROUP COUNT 100 on its own connection, the handler for each entry, one XACK per batch.
import { Redis } from 'ioredis'
import { REDIS_URL } from '../common.js'
import type { RawClient } from './raw-client.js'

const READ_COUNT = 100

export function redisRaw (): RawClient {
  const writer = new Redis(REDIS_URL, { enableAutoPipelining: true })
  const readers: Redis[] = []
  let running = true

  return {
    async send (topic, key, body, headers) {
      if (headers === undefined) await writer.xadd(topic, '*', 'data', body)
      else await writer.xadd(topic, '*', 'data', body, 'key', key, 'headers', JSON.stringify(headers))
    },
    async consume (topic, group, handle) {
      try {
        await writer.xgroup('CREATE', topic, group, '0', 'MKSTREAM')
      } catch (err) {
        if (!String((err as Error).message).includes('BUSYGROUP')) throw err
      }
      const reader = new Redis(REDIS_URL)
      readers.push(reader)
      const loop = async (): Promise<void> => {
        while (running) {
          const reply = await reader.xreadgroupBuffer('GROUP', group, 'raw-1', 'COUNT', READ_COUNT, 'BLOCK', 1000, 'STREAMS', topic, '>') as Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null
          if (reply === null) continue
          for (const [, entries] of reply) {
            const ids: Buffer[] = []
            for (const [id, fields] of entries) {
              for (let i = 0; i + 1 < fields.length; i += 2) {
                if (fields[i]!.toString() === 'data') handle(fields[i + 1]!)
              }
              ids.push(id)
            }
            if (ids.length > 0) await writer.xack(topic, group, ...ids)
          }
        }
      }
      void loop().catch((err: unknown) => { if (running) console.error('redis raw consumer:', err) })
    },
    async close () {
      running = false
      for (const r of readers) r.disconnect()
      await writer.quit().catch(() => {})
    }
  }
}
