import type { HandlerDefinition } from './handler.js'

// Handlers declared with `autoStart: true`: `startConsumers()` starts them even when they
// are not in the loaded directory. Kept on globalThis so two copies of Herald in one
// process (a linked package, say) share it.
const KEY = Symbol.for('herald.registry')
const store = globalThis as typeof globalThis & { [KEY]?: Set<HandlerDefinition> }

/** Adds a handler to the process registry. */
export function registerHandler (definition: HandlerDefinition): void {
  (store[KEY] ??= new Set()).add(definition)
}

/** The handlers registered in this process, in registration order. */
export function registeredHandlers (): HandlerDefinition[] {
  return [...(store[KEY] ?? [])]
}

/** Removes one handler, or all. */
export function unregisterHandlers (definition?: HandlerDefinition): void {
  if (definition === undefined) store[KEY]?.clear()
  else store[KEY]?.delete(definition)
}
