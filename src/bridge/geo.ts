/**
 * Places as both networks' clients write them: geo: URIs (RFC 5870), which Element, Conversations
 * and Gajim open on a map. Part of the adapter contract (adapters use it to read and write places).
 */
import type { LocationBody } from './events.js';

/** `geo:52.52,13.405` (RFC 5870), the form both networks' clients open on a map. */
export function geoUri(place: Pick<LocationBody, 'latitude' | 'longitude'>): string {
  return `geo:${place.latitude},${place.longitude}`;
}

/** `geo:52.52,13.405;u=35` -> the coordinates (RFC 5870), or undefined for anything else. */
export function parseGeoUri(uri: string): { latitude: number; longitude: number } | undefined {
  const m = /^geo:(-?\d{1,3}(?:\.\d+)?),(-?\d{1,3}(?:\.\d+)?)(?:,-?\d+(?:\.\d+)?)?(?:;.*)?$/i.exec(
    uri.trim(),
  );
  if (!m) return undefined;
  const latitude = Number(m[1]);
  const longitude = Number(m[2]);
  if (Math.abs(latitude) > 90 || Math.abs(longitude) > 180) return undefined;
  return { latitude, longitude };
}
