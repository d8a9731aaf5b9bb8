// NestJS microservices on the broker's transport: a controller with an @EventPattern handler
// (decorators applied as functions: Nest needs legacy decorators, Herald's code uses the
// standard ones), and a ClientProxy `emit` to publish. Kafka: the handler runs before the
// offset is committed; RabbitMQ: noAck false, prefetch 100, ack after the handler; Redis:
// Nest's transport is pub/sub, not streams (nothing is kept for a consumer that is away).
import 'reflect-metadata'
import { Controller, Module } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { ClientProxyFactory, Ctx, EventPattern, Payload, Transport, type ClientProxy, type RmqContext } from '@nestjs/microservices'
import { lastValueFrom } from 'rxjs'
import { answer, produce, KAFKA_BROKERS, keyOf, order, RABBITMQ_URL, ready, sendAll, Tally, type Task } from '../common.js'

const PREFETCH = 100

function server (task: Task): Record<string, unknown> {
  if (task.broker === 'kafka') return { transport: Transport.KAFKA, options: { client: { clientId: 'bench-nest', brokers: KAFKA_BROKERS }, consumer: { groupId: task.group }, subscribe: { fromBeginning: true } } }
  if (task.broker === 'rabbitmq') return { transport: Transport.RMQ, options: { urls: [RABBITMQ_URL], queue: task.topic, queueOptions: { durable: true }, noAck: false, prefetchCount: PREFETCH } }
  if (task.broker === 'redis') return { transport: Transport.REDIS, options: { host: '127.0.0.1', port: 6379 } }
  throw new Error('NestJS microservices: no transport for the embedded broker')
}

function client (task: Task): Pick<ClientProxy, 'connect' | 'emit' | 'close'> {
  if (task.broker === 'kafka') return ClientProxyFactory.create({ transport: Transport.KAFKA, options: { client: { clientId: 'bench-nest-client', brokers: KAFKA_BROKERS }, producerOnlyMode: true, producer: { allowAutoTopicCreation: false } } })
  if (task.broker === 'rabbitmq') return ClientProxyFactory.create({ transport: Transport.RMQ, options: { urls: [RABBITMQ_URL], queue: task.topic, queueOptions: { durable: true }, persistent: true } })
  return ClientProxyFactory.create({ transport: Transport.REDIS, options: { host: '127.0.0.1', port: 6379 } })
}

export async function run (task: Task): Promise<void> {
  if (task.role === 'consume') {
    const tally = new Tally(task.n)
    class Orders {
      handle (data: unknown, context: unknown): void {
        tally.record(data)
        if (task.broker === 'rabbitmq') {
          const rmq = context as RmqContext
          ;(rmq.getChannelRef() as { ack: (m: unknown) => void }).ack(rmq.getMessage())
        }
      }
    }
    const proto = Orders.prototype as unknown as object
    EventPattern(task.topic)(proto, 'handle', Object.getOwnPropertyDescriptor(Orders.prototype, 'handle')!)
    Payload()(proto, 'handle', 0)
    Ctx()(proto, 'handle', 1)
    Controller()(Orders)
    class Bench {}
    Module({ controllers: [Orders] })(Bench)
    const app = await NestFactory.createMicroservice(Bench, { ...server(task), logger: false } as never)
    await app.listen()
    ready()
    await tally.settle()
    answer(tally.summary())
    await app.close()
  } else if (task.role === 'produce') {
    const proxy = client(task)
    await proxy.connect()
    const data = (i: number): unknown => task.broker === 'kafka' ? { key: keyOf(i), value: order(i) } : order(i)
    answer(await produce(task.n, async i => await lastValueFrom(proxy.emit(task.topic, data(i)), { defaultValue: undefined })))
    await proxy.close()
  } else {
    throw new Error(`nest contender: no role ${task.role}`)
  }
}
