// The typed listener registry every serial driver uses for SerialEvents (data, drain, error,
// close). Listeners run synchronously in registration order; a listener that throws is a bug
// in the caller and propagates. An `error` with no listener is dropped: the fatal ones are
// always followed by `close`, which callers do listen for.
import type { SerialEvents } from '../serial-port.ts';

type AnyListener = (...args: never[]) => void;

export class SerialEmitter {
  private readonly listeners = new Map<keyof SerialEvents, AnyListener[]>();

  on<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): void {
    const list = this.listeners.get(event) ?? [];
    list.push(listener as AnyListener);
    this.listeners.set(event, list);
  }

  off<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): void {
    const list = this.listeners.get(event);
    if (list === undefined) return;
    const i = list.indexOf(listener as AnyListener);
    if (i >= 0) list.splice(i, 1);
  }

  emit<E extends keyof SerialEvents>(event: E, ...args: Parameters<SerialEvents[E]>): void {
    const list = this.listeners.get(event);
    if (list === undefined || list.length === 0) return;
    for (const l of [...list]) (l as (...a: Parameters<SerialEvents[E]>) => void)(...args);
  }

  listenerCount(event: keyof SerialEvents): number {
    return this.listeners.get(event)?.length ?? 0;
  }
}
