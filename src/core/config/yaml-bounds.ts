import {
  Composer,
  type Document,
  type DocumentOptions,
  isAlias,
  isCollection,
  isPair,
  isScalar,
  Lexer,
  type Node,
  type ParsedNode,
  type ParseOptions,
  Parser,
  type Scalar,
  type SchemaOptions,
  YAMLParseError,
} from 'yaml';

/**
 * What a teal.yml may cost to read. The file is read by `teal validate`, by `teal up` and by the API's
 * config check, so a hostile or broken one (a billion-laughs alias bomb, a million nested brackets, a
 * multi-gigabyte file) must be refused in time and memory proportional to its size, with a position,
 * never a stack trace. A real teal.yml is a few kilobytes: every bound is far above any honest file.
 */
export const LIMITS = {
  /** Bytes of the file. ~2000x a large real config, and still validated in about two seconds. */
  bytes: 10 * 1024 * 1024,
  /** Levels of nested mappings and lists (teal's own schema needs about 8). */
  depth: 64,
  /** Aliases (`*name`) in the file. */
  aliases: 1_000,
  /** Nodes the aliases add when they are expanded, all of them together (the bomb's lever). */
  aliasNodes: 100_000,
} as const;

/** One way the text breaks a bound or a YAML rule, at a character offset of the text. */
export interface BoundProblem {
  offset: number;
  message: string;
}

/**
 * parseDocument, with flow nesting (`[[[[...`) checked on the lexer's tokens as they come: yaml's
 * composer recurses per level, and a file of a million brackets would cost seconds before it gave
 * up. Lexes once (the same Lexer -> Parser -> Composer chain parseDocument runs) and stops at the
 * first bracket too deep, returning its offset.
 */
export function parseBounded(
  text: string,
  options: DocumentOptions & ParseOptions & SchemaOptions,
): { doc: Document.Parsed } | { tooDeep: number } {
  const parser = new Parser(options.lineCounter?.addNewLine);
  let tooDeep: number | undefined;
  function* tokens() {
    options.lineCounter?.addNewLine(0);
    let depth = 0;
    for (const lexeme of new Lexer().lex(text)) {
      if (lexeme === '[' || lexeme === '{') {
        depth++;
        if (depth > LIMITS.depth) {
          tooDeep = parser.offset;
          return;
        }
      } else if (lexeme === ']' || lexeme === '}') depth = Math.max(0, depth - 1);
      yield* parser.next(lexeme);
    }
    yield* parser.end();
  }
  let doc: Document.Parsed | undefined;
  for (const next of new Composer(options).compose(tokens(), true, text.length)) {
    if (!doc) doc = next;
    else {
      doc.errors.push(
        new YAMLParseError(
          next.range.slice(0, 2) as [number, number],
          'MULTIPLE_DOCS',
          'one document only, no ---',
        ),
      );
      break;
    }
  }
  if (tooDeep !== undefined) return { tooDeep };
  return { doc: doc! };
}

export const nestedTooDeep = `nested more than ${LIMITS.depth} levels deep (a teal.yml needs about 8)`;

/**
 * Duplicate keys, depth, and alias expansion, in one pass over the parsed document. Duplicate keys
 * are found here with a set per mapping rather than by yaml's `uniqueKeys`, which compares each new
 * key with every earlier one of its mapping: quadratic, 3 s for one 0.5 MB `env:`.
 */
export function documentProblems(doc: Document.Parsed): BoundProblem[] {
  const problems: BoundProblem[] = [];
  const anchors = new Map<string, Node>();
  /** What each alias pointed at where it stands: a later `&name` may reuse the name. */
  const targets = new Map<Node, Node>();
  /** Expanded size of each node reached so far; -1 while its own contents are being walked. */
  const sizes = new Map<Node, number>();
  let aliases = 0;
  let aliasNodes = 0;
  let expansionReported = false;

  // The expanded size of a node an alias points at: each node counts once per time it is reached.
  const expanded = (node: Node, seen: number): number => {
    const known = sizes.get(node);
    if (known !== undefined) return known;
    let size = 1;
    if (isAlias(node)) {
      const target = targets.get(node);
      size = target ? expanded(target, seen) : 1;
    } else if (isCollection(node)) {
      for (const item of node.items as unknown[]) {
        if (seen + size > LIMITS.aliasNodes) break;
        if (isPair(item)) {
          if (item.key) size += expanded(item.key as Node, seen + size);
          if (item.value) size += expanded(item.value as Node, seen + size);
        } else size += expanded(item as Node, seen + size);
      }
    }
    sizes.set(node, size);
    return size;
  };

  const offsetOf = (node: unknown) => (node as ParsedNode | undefined)?.range?.[0] ?? 0;

  // Iterative, in document order, so anchors are known before the aliases after them.
  const stack: ({ node: unknown; depth: number } | { settle: Node })[] = [{ node: doc.contents, depth: 1 }];
  while (stack.length > 0) {
    const next = stack.pop()!;
    if ('settle' in next) {
      sizes.delete(next.settle);
      continue;
    }
    const { node, depth } = next;
    if (!node) continue;
    const n = node as Node & { anchor?: string };
    if (isAlias(n)) {
      aliases++;
      if (aliases === LIMITS.aliases + 1)
        problems.push({ offset: offsetOf(n), message: `more than ${LIMITS.aliases} aliases (*name)` });
      const target = anchors.get(n.source);
      if (!target) {
        problems.push({
          offset: offsetOf(n),
          message: `alias *${n.source} names no anchor &${n.source} before it`,
        });
      } else if (sizes.get(target) === -1) {
        problems.push({
          offset: offsetOf(n),
          message: `alias *${n.source} is inside its own anchor &${n.source}`,
        });
      } else {
        targets.set(n, target);
        if (expansionReported) continue;
        aliasNodes += expanded(target, aliasNodes);
        if (aliasNodes > LIMITS.aliasNodes) {
          expansionReported = true;
          problems.push({
            offset: offsetOf(n),
            message: `aliases expand to more than ${LIMITS.aliasNodes} values (an alias bomb?)`,
          });
        }
      }
      continue;
    }
    if (n.anchor) anchors.set(n.anchor, n);
    if (!isCollection(n)) continue;
    if (depth > LIMITS.depth) {
      problems.push({ offset: offsetOf(n), message: nestedTooDeep });
      continue;
    }
    // Marked while walked, so an alias inside its own anchor is caught; the size is settled on exit.
    if (n.anchor) sizes.set(n, -1);
    stack.push({ settle: n });
    const keys = new Set<unknown>();
    const children: unknown[] = [];
    for (const item of n.items as unknown[]) {
      if (isPair(item)) {
        if (isScalar(item.key)) {
          const key = (item.key as Scalar).value;
          if (keys.has(key))
            problems.push({ offset: offsetOf(item.key), message: 'Map keys must be unique' });
          keys.add(key);
        }
        children.push(item.key, item.value);
      } else children.push(item);
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push({ node: children[i], depth: depth + 1 });
  }
  return problems;
}
