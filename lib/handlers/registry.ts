import type { HandlerDefinition } from './handler.js'

// Handlers declared with `autoStart: true`: `startConsumers()` starts them even when they
// are not in the loaded directory.
const registry = new Set<HandlerDefinition>()

/** Adds a handler to the process registry. */
export function registerHandler (definition: HandlerDefinition): void {
  registry.add(definition)
}

/** The handlers registered in this process, in registration order. */
export function registeredHandlers (): HandlerDefinition[] {
  return [...registry]
}

/** Removes one handler, or all. */
export function unregisterHandlers (definition?: HandlerDefinition): void {
  if (definition === undefined) registry.clear()
  else registry.delete(definition)
}
