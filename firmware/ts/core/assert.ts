// Invariant assertions. They stay on in production: a broken invariant crashes the blade
// so that its partner takes over, rather than letting it write wrong data.

export class AssertionFailure extends Error {
  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = 'AssertionFailure';
  }
}

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionFailure(typeof message === 'function' ? message() : message);
}

export function unreachable(value: never, what = 'value'): never {
  throw new AssertionFailure(`unexpected ${what}: ${String(value)}`);
}
