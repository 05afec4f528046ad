import { CoolifyApplication } from './coolify.client';

/**
 * The fleet's identity on its Coolify applications: the first word of each slot application's description.
 * Only applications carrying this fleet's marker are ever listed, adopted, stopped or deleted.
 */
export const fleetMarker = (fleetId: string) => `meeboter-fleet=${fleetId}`;

export const isFleetApplication = (app: CoolifyApplication, fleetId: string) =>
  (app.description ?? '').split(/\s+/)[0] === fleetMarker(fleetId);
