/**
 * Getting the image a release names onto the engine, by pull policy, and saying exactly which
 * image that is. The recipe teal replaces ran `docker pull` and carried on when it failed,
 * redeploying whatever image the host still had under that tag; here a failed pull fails the
 * start with the engine's own message, and the instance records the image ID it runs.
 */
import { TealError } from '../../core/errors.js';
import type { InstanceImage } from '../runtime.js';
import { type Engine, isEngineError, readProgress } from './engine.js';

export type PullPolicy = 'always' | 'missing' | 'never';

export interface ImageRef {
  /** Registry and repository: "registry.local:5000/team/web". */
  name: string;
  tag?: string;
  /** "sha256:…" when the reference pins one. */
  digest?: string;
}

/** The characters a reference may hold; it is used in URL paths, so nothing else gets through. */
const REF_CHARS = /^[a-z0-9][a-zA-Z0-9._\-/:@]*$/;

/** Splits `name[:tag][@digest]`; undefined when it is not a reference the engine could take. */
export function parseImageRef(ref: string): ImageRef | undefined {
  if (!REF_CHARS.test(ref) || ref.includes('..') || ref.includes('//')) return undefined;
  const [named, digest, ...extra] = ref.split('@');
  if (extra.length > 0 || named === undefined || named === '') return undefined;
  if (digest !== undefined && !/^[a-z0-9]+:[a-f0-9]{32,}$/.test(digest)) return undefined;
  // A colon after the last slash starts the tag; one before it is a registry's port.
  const colon = named.lastIndexOf(':');
  const hasTag = colon > named.lastIndexOf('/');
  const name = hasTag ? named.slice(0, colon) : named;
  const tag = hasTag ? named.slice(colon + 1) : undefined;
  if (name === '' || name.endsWith('/') || tag === '') return undefined;
  return { name, ...(tag === undefined ? {} : { tag }), ...(digest === undefined ? {} : { digest }) };
}

interface ImageInspect {
  Id: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
}

export interface ResolveOptions {
  /** Named in errors: "services.web". */
  where: string;
  signal: AbortSignal;
}

/**
 * Makes sure the engine has `ref` as the policy says and returns what it resolves to. Throws
 * TEAL_START_FAILED for a bad reference, a missing image under `never`, or a failed pull;
 * TEAL_RUNTIME_FAILED when the engine cannot be reached.
 */
export async function resolveImage(
  engine: Engine,
  ref: string,
  policy: PullPolicy,
  options: ResolveOptions,
): Promise<InstanceImage> {
  const { where, signal } = options;
  const parsed = parseImageRef(ref);
  if (!parsed) {
    throw new TealError('TEAL_START_FAILED', `cannot start ${where}: "${ref}" is not an image reference`, {
      image: ref,
    });
  }
  if (policy !== 'always') {
    const found = await inspectImage(engine, ref);
    if (found) return describe(ref, parsed, found);
    if (policy === 'never') {
      throw new TealError(
        'TEAL_START_FAILED',
        `cannot start ${where}: image "${ref}" is not on the Docker engine at ${engine.host} and its pull policy is "never"`,
        { image: ref, pull: policy },
      );
    }
  }
  signal.throwIfAborted();
  await pull(engine, ref, parsed, options);
  const pulled = await inspectImage(engine, ref);
  if (!pulled) {
    throw new TealError(
      'TEAL_START_FAILED',
      `cannot start ${where}: image "${ref}" was pulled but the engine does not have it`,
      { image: ref, pull: policy },
    );
  }
  return describe(ref, parsed, pulled);
}

/**
 * The image a release ran, by its ID, for starting that release again exactly: never pulled (an ID
 * names no registry). Throws TEAL_START_FAILED when the engine no longer has it.
 */
export async function pinnedImage(
  engine: Engine,
  ref: string,
  id: string,
  options: { where: string },
): Promise<InstanceImage> {
  const found = /^sha256:[a-f0-9]{64}$/.test(id) ? await inspectImage(engine, id) : undefined;
  if (!found) {
    throw new TealError(
      'TEAL_START_FAILED',
      `cannot start ${options.where}: image ${id} ("${ref}"), which this release ran, is no longer on the Docker engine at ${engine.host}; deploy its version again to pull it`,
      { image: ref, imageId: id },
    );
  }
  const parsed = parseImageRef(ref) ?? { name: ref };
  return describe(ref, parsed, found);
}

/**
 * Removes the tag `image.ref` when it still names `image.id`, so the image goes once no other tag
 * or container holds it. A tag moved on to another image is left alone (that image may be live),
 * and so is the last tag of an image in `keepIds` (removing it would delete a retained image).
 * Returns whether it removed the tag.
 */
export async function untagImage(
  engine: Engine,
  image: InstanceImage,
  keepIds: Set<string>,
): Promise<boolean> {
  if (!parseImageRef(image.ref)) return false;
  const found = await inspectImage(engine, image.ref);
  if (found?.Id !== image.id) return false;
  if (keepIds.has(found.Id) && (found.RepoTags ?? []).length <= 1) return false;
  try {
    // Deleting by reference removes that tag; the engine deletes the image with it only when no
    // other tag names it.
    await engine.json('DELETE', `/images/${image.ref}`);
    return true;
  } catch (err) {
    // 409: a container (a stopped one too) still uses it; then it stays.
    if (isEngineError(err, 409) || isEngineError(err, 404)) return false;
    throw err;
  }
}

async function pull(engine: Engine, ref: string, parsed: ImageRef, options: ResolveOptions): Promise<void> {
  const { where, signal } = options;
  // Without a tag the engine would pull every tag of the repository.
  const query = { fromImage: parsed.name, tag: parsed.digest ?? parsed.tag ?? 'latest' };
  try {
    const res = await engine.open('POST', '/images/create', { query, signal, timeoutMs: 0 });
    await readProgress(res, `pull of ${ref}`, signal);
  } catch (err) {
    if (!isEngineError(err)) throw err;
    throw new TealError(
      'TEAL_START_FAILED',
      `cannot start ${where}: pulling image "${ref}" failed: ${err.engineMessage}`,
      { image: ref, engineMessage: err.engineMessage },
      { cause: err },
    );
  }
}

async function inspectImage(engine: Engine, ref: string): Promise<ImageInspect | undefined> {
  try {
    return await engine.json<ImageInspect>('GET', `/images/${ref}/json`);
  } catch (err) {
    if (isEngineError(err, 404)) return undefined;
    throw err;
  }
}

function describe(ref: string, parsed: ImageRef, image: ImageInspect): InstanceImage {
  const digest = parsed.digest
    ? `${parsed.name}@${parsed.digest}`
    : (image.RepoDigests ?? []).find((d) => familiar(d.split('@')[0] ?? '') === familiar(parsed.name));
  return { ref, id: image.Id, ...(digest === undefined ? {} : { digest }) };
}

/** Docker Hub's long names in their familiar form, as the engine lists RepoDigests: "nginx". */
function familiar(name: string): string {
  return name.replace(/^(docker\.io|index\.docker\.io)\//, '').replace(/^library\//, '');
}
