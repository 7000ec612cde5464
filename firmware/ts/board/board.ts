// Parsing and loading the board descriptor (schema.ts) with errors that name the field:
// `disks.own[1].uri: must be an absolute path ...`.
import { readFile } from 'node:fs/promises';
import { TwinbladeError } from '../core/errors.ts';
import { boardSchema, type Board } from './schema.ts';

export const BoardErrorCode = {
  invalid: 'ERR_BOARD_INVALID',
  unreadable: 'ERR_BOARD_UNREADABLE',
} as const;

export interface BoardIssue {
  /** Dotted path with indexes, e.g. `disks.own[1].uri` (empty for the document itself). */
  path: string;
  message: string;
}

export class BoardError extends TwinbladeError {
  constructor(
    message: string,
    readonly issues: readonly BoardIssue[],
    code: string = BoardErrorCode.invalid,
    options?: { cause?: unknown },
  ) {
    super(code, code === BoardErrorCode.invalid ? 'invalid-argument' : 'io', message, options);
    this.name = 'BoardError';
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** Validates a parsed document; throws BoardError listing every problem. */
export function parseBoard(input: unknown, source = 'board'): Board {
  const r = boardSchema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
  const lines = issues.map((i) => `  ${i.path === '' ? '(document)' : i.path}: ${i.message}`);
  throw new BoardError(`${source}: invalid board descriptor\n${lines.join('\n')}`, issues);
}

/** Reads and validates a JSON board descriptor file. */
export async function loadBoard(file: string): Promise<Board> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new BoardError(`${file}: cannot read board descriptor: ${(e as Error).message}`, [], BoardErrorCode.unreadable, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new BoardError(`${file}: not JSON: ${(e as Error).message}`, [{ path: '', message: (e as Error).message }], BoardErrorCode.invalid, { cause: e });
  }
  return parseBoard(json, file);
}

/** Blade index used by on-disk and on-NVRAM layouts: a = 0, b = 1. */
export function bladeIndex(board: Board): 0 | 1 {
  return board.identity.blade === 'a' ? 0 : 1;
}

/** The partner's blade letter. */
export function partnerBlade(board: Board): 'a' | 'b' {
  return board.identity.blade === 'a' ? 'b' : 'a';
}
