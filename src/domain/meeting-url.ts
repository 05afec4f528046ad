import { MeetingPlatform } from './bot.lifecycle';

/**
 * Which meeting links the fleet accepts, per meeting platform. A bot image only knows its own platform, so a
 * Zoom bot sent to a Google Meet link would spend a platform slot failing inside the meeting: links are
 * checked before the bot is created, and the platform of a link can be inferred from it.
 *
 * Every form is `https://<host>/<path>` with no port and no credentials; any query (`?pwd=`, `?p=`) is kept.
 * Pure: no I/O.
 */
interface LinkForm {
  label: string;
  /** The accepted forms, as told to a client whose link does not match. */
  expected: string;
  ownsHost(host: string): boolean;
  matches(path: string, host: string): boolean;
}

const FORMS: Record<MeetingPlatform, LinkForm> = {
  'google-meet': {
    label: 'Google Meet',
    expected: 'https://meet.google.com/abc-defg-hij',
    ownsHost: (host) => host === 'meet.google.com',
    matches: (path) => /^\/[a-z]{3}-[a-z]{4}-[a-z]{3}\/?$/i.test(path),
  },
  'microsoft-teams': {
    label: 'Microsoft Teams',
    expected: 'https://teams.microsoft.com/l/meetup-join/... or https://teams.live.com/meet/<id>',
    ownsHost: (host) => host === 'teams.microsoft.com' || host === 'teams.live.com',
    matches: (path, host) =>
      host === 'teams.microsoft.com' ? /^\/l\/meetup-join\/[^/]+/.test(path) : /^\/meet\/[a-z0-9]+\/?$/i.test(path),
  },
  zoom: {
    label: 'Zoom',
    expected: 'https://zoom.us/j/<meeting id> or https://zoom.us/my/<name>, on zoom.us or a *.zoom.us subdomain',
    ownsHost: (host) => host === 'zoom.us' || host.endsWith('.zoom.us'),
    matches: (path) => /^\/j\/\d{9,11}\/?$/.test(path) || /^\/my\/[a-z0-9._-]+\/?$/i.test(path),
  },
};

const PLATFORMS = Object.keys(FORMS) as MeetingPlatform[];

export type MeetingUrlCheck = { platform: MeetingPlatform } | { problem: string };

/**
 * The platform `url` is a meeting link of, or why it is refused: not a link of any known platform, not one of
 * the accepted forms, or a link of another platform than `declared` (when the client named one). The
 * problem reads after the field name: "meeting.url <problem>".
 */
export function checkMeetingUrl(url: string, declared?: MeetingPlatform): MeetingUrlCheck {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { problem: 'is not a URL' };
  }
  if (parsed.protocol !== 'https:') return { problem: 'must be an https:// meeting link' };
  if (parsed.port || parsed.username || parsed.password) return { problem: 'must not carry a port or credentials' };
  const platform = PLATFORMS.find((candidate) => FORMS[candidate].ownsHost(parsed.hostname));
  if (!platform) return { problem: 'is not a Google Meet, Microsoft Teams or Zoom meeting link' };
  if (declared && declared !== platform) {
    return { problem: `is a ${FORMS[platform].label} link, but meeting.platform is ${declared}` };
  }
  if (!FORMS[platform].matches(parsed.pathname, parsed.hostname)) {
    return { problem: `is not a ${FORMS[platform].label} meeting link (expected ${FORMS[platform].expected})` };
  }
  return { platform };
}
