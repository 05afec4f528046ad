import { MeetingPlatform } from '../src/domain/bot.lifecycle';
import { checkMeetingUrl } from '../src/domain/meeting-url';

/** The meeting links the fleet accepts, per platform (README "Meeting links"), with the platform inferred. */
const accepted: Array<[string, MeetingPlatform]> = [
  ['https://meet.google.com/abc-defg-hij', 'google-meet'],
  ['https://meet.google.com/abc-defg-hij?authuser=1', 'google-meet'],
  ['https://meet.google.com/ABC-DEFG-HIJ/', 'google-meet'],
  [
    'https://teams.microsoft.com/l/meetup-join/19%3ameeting_N2E3%40thread.v2/0?context=%7b%22Tid%22%3a%22t%22%7d',
    'microsoft-teams',
  ],
  ['https://teams.live.com/meet/9876543210123?p=AbCdEf', 'microsoft-teams'],
  ['https://teams.live.com/meet/9876543210123', 'microsoft-teams'],
  ['https://zoom.us/j/123456789', 'zoom'],
  ['https://zoom.us/j/12345678901?pwd=abcDEF123', 'zoom'],
  ['https://us02web.zoom.us/j/98765432101?pwd=x', 'zoom'],
  ['https://acme.zoom.us/my/ada.lovelace', 'zoom'],
  ['https://zoom.us/my/ada', 'zoom'],
];

const refused: Array<[string, MeetingPlatform | undefined, string]> = [
  ['not a url', undefined, 'is not a URL'],
  ['http://meet.google.com/abc-defg-hij', undefined, 'must be an https:// meeting link'],
  ['ftp://zoom.us/j/123456789', undefined, 'must be an https:// meeting link'],
  ['https://meet.google.com:8443/abc-defg-hij', undefined, 'must not carry a port or credentials'],
  ['https://user:pw@zoom.us/j/123456789', undefined, 'must not carry a port or credentials'],
  ['https://example.com/j/123456789', undefined, 'is not a Google Meet, Microsoft Teams or Zoom meeting link'],
  ['https://zoom.us.evil.example/j/123456789', undefined, 'is not a Google Meet, Microsoft Teams or Zoom meeting link'],
  ['https://evilzoom.us/j/123456789', undefined, 'is not a Google Meet, Microsoft Teams or Zoom meeting link'],
  ['https://google.com/abc-defg-hij', undefined, 'is not a Google Meet, Microsoft Teams or Zoom meeting link'],
  ['https://meet.google.com/', 'google-meet', 'is not a Google Meet meeting link'],
  ['https://meet.google.com/abcdefghij', 'google-meet', 'is not a Google Meet meeting link'],
  ['https://meet.google.com/abc-defg-hij/extra', undefined, 'is not a Google Meet meeting link'],
  ['https://teams.microsoft.com/l/chat/0/0', 'microsoft-teams', 'is not a Microsoft Teams meeting link'],
  ['https://teams.microsoft.com/l/meetup-join/', undefined, 'is not a Microsoft Teams meeting link'],
  ['https://teams.live.com/meet/', undefined, 'is not a Microsoft Teams meeting link'],
  ['https://zoom.us/j/123', 'zoom', 'is not a Zoom meeting link'],
  ['https://zoom.us/j/abcdefghi', undefined, 'is not a Zoom meeting link'],
  ['https://zoom.us/w/123456789', undefined, 'is not a Zoom meeting link'],
  ['https://zoom.us/', undefined, 'is not a Zoom meeting link'],
  // the case: a Google Meet link for the zoom bot
  ['https://meet.google.com/abc-defg-hij', 'zoom', 'is a Google Meet link, but meeting.platform is zoom'],
  ['https://zoom.us/j/123456789', 'google-meet', 'is a Zoom link, but meeting.platform is google-meet'],
  ['https://teams.live.com/meet/123', 'zoom', 'is a Microsoft Teams link, but meeting.platform is zoom'],
];

describe('accepted meeting links', () => {
  it.each(accepted)('%s is a %s link, inferred without a platform and accepted with it', (url, platform) => {
    expect(checkMeetingUrl(url)).toEqual({ platform });
    expect(checkMeetingUrl(url, platform)).toEqual({ platform });
  });
});

describe('refused meeting links', () => {
  it.each(refused)('%s (platform %s) is refused: %s', (url, platform, problem) => {
    const check = checkMeetingUrl(url, platform);
    expect('problem' in check && check.problem).toContain(problem);
  });
});
