/**
 * Names of the bot images, shared by every platform that runs them (Kubernetes Jobs, Coolify slots, the
 * task definitions `aws:setup` registers), and the check that a configured image reference is one a
 * registry accepts.
 */

/**
 * `ghcr.io/<org>`, the org lowercased: OCI repository paths are lowercase only, while GHCR_ORG is usually
 * written as the organisation spells itself ("Payme-Works"), which would leave every pod in InvalidImageName.
 */
export function ghcrRegistry(org: string): string {
  return `ghcr.io/${org.toLowerCase()}`;
}

/** `<registry>/meeboter-<meeting-platform>-bot`, the repository of one meeting platform's bot. */
export function botRepository(registry: string, meetingPlatform: string): string {
  return `${registry}/meeboter-${meetingPlatform}-bot`;
}

// The grammar of an image reference (the distribution project's `reference` package, which the OCI
// distribution spec and every container runtime follow): [host[:port]/]path[:tag][@digest], the path
// lowercase letters and digits joined by `.`, `_`, `__` or dashes.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const NAME = new RegExp(`^(?:${HOST}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const NAME_MAX_LENGTH = 255;

/** Whether `reference` (`name[:tag][@digest]`) is a valid image reference. */
export function isImageReference(reference: string): boolean {
  const at = reference.indexOf('@');
  const withoutDigest = at < 0 ? reference : reference.slice(0, at);
  if (at >= 0 && !DIGEST.test(reference.slice(at + 1))) return false;
  // a colon after the last slash starts the tag; one before it belongs to the host's port
  const colon = withoutDigest.lastIndexOf(':');
  const hasTag = colon > withoutDigest.lastIndexOf('/');
  const name = hasTag ? withoutDigest.slice(0, colon) : withoutDigest;
  if (hasTag && !TAG.test(withoutDigest.slice(colon + 1))) return false;
  return name.length <= NAME_MAX_LENGTH && NAME.test(name);
}
