// A configuration as the editor holds it: cap.json, the rule sets, and every other file as
// bytes; read from and written to the zip that the console stores (DESIGN §3).
import { strFromU8, strToU8, unzipSync, zipSync } from 'fflate';
import { base64ToBytes, bytesToBase64 } from '../util';
import { parseRuleSet, RuleSetDoc, ruleSetExits, serializeRuleSet } from './ruleset';

export interface Manifest {
  format: number;
  name: string;
  description?: string;
  ruleset: string;
  content_ruleset?: string | null;
  startup_ruleset?: string | null;
  completion_ruleset?: string | null;
  modes?: Record<string, string>;
  globals?: Record<string, unknown>;
  origin?: string;
  databases?: Record<string, { url: string }>;
  performance?: 'off' | 'counts' | 'timings';
  extensions?: Record<string, string>;
  [extra: string]: unknown;
}

export interface ConfigurationDoc {
  manifest: Manifest;
  rulesets: Record<string, RuleSetDoc>;
  /** Every other file (data/, content/), by path. */
  files: Record<string, Uint8Array>;
}

export function newConfiguration(name: string): ConfigurationDoc {
  return {
    manifest: { format: 1, name, description: '', ruleset: 'main', performance: 'timings' },
    rulesets: { main: { name: 'main', description: '', exits: [], rules: {} } },
    files: {},
  };
}

/** Reads a configuration zip; throws Error naming the member that is wrong. */
export function readConfigurationZip(bytes: Uint8Array): ConfigurationDoc {
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(bytes);
  } catch (e) {
    throw new Error(`not a zip: ${(e as Error).message}`);
  }
  // A zip of the folder itself (hello/cap.json) is read as if it were the folder's content.
  const names = Object.keys(entries).filter((n) => !n.endsWith('/'));
  let prefix = '';
  if (!names.includes('cap.json')) {
    const m = names.find((n) => /^[^/]+\/cap\.json$/.test(n));
    if (m) prefix = m.slice(0, m.length - 'cap.json'.length);
  }
  const doc: ConfigurationDoc = { manifest: undefined as unknown as Manifest, rulesets: {}, files: {} };
  for (const full of names) {
    if (!full.startsWith(prefix)) continue;
    const path = full.slice(prefix.length);
    const data = entries[full];
    if (path === 'cap.json') {
      try {
        doc.manifest = JSON.parse(strFromU8(data)) as Manifest;
      } catch (e) {
        throw new Error(`cap.json: not valid JSON: ${(e as Error).message}`);
      }
    } else if (/^rulesets\/[^/]+\.json$/.test(path)) {
      const name = path.slice('rulesets/'.length, -'.json'.length);
      try {
        doc.rulesets[name] = parseRuleSet(strFromU8(data), name);
      } catch (e) {
        throw new Error(`${path}: ${(e as Error).message}`);
      }
    } else {
      doc.files[path] = data;
    }
  }
  if (!doc.manifest) throw new Error('cap.json: missing: a configuration needs a cap.json manifest');
  return doc;
}

/** The configuration zip, cap.json first, rule sets as serializeRuleSet writes them. */
export function writeConfigurationZip(doc: ConfigurationDoc): Uint8Array {
  const entries: Record<string, Uint8Array> = {};
  entries['cap.json'] = strToU8(JSON.stringify(doc.manifest, null, 2) + '\n');
  for (const [name, rs] of Object.entries(doc.rulesets))
    entries[`rulesets/${name}.json`] = strToU8(serializeRuleSet({ ...rs, name }));
  for (const [path, data] of Object.entries(doc.files)) entries[path] = data;
  return zipSync(entries, { level: 6, mtime: new Date('2020-01-01T00:00:00Z') });
}

/** Each rule set's exits, for rule-set nodes and their chain points. */
export function exitsByRuleSet(doc: ConfigurationDoc): Record<string, string[]> {
  return Object.fromEntries(Object.entries(doc.rulesets).map(([n, rs]) => [n, ruleSetExits(rs)]));
}

/** A file as the console's JSON carries it: text, or {"base64": ...} for binary data. */
export type FileValue = string | { base64: string };

/** Reads the console's {"files": {...}} form of a configuration (GET .../configurations/NAME). */
export function configurationFromFiles(files: Record<string, FileValue>): ConfigurationDoc {
  const bytes: Record<string, Uint8Array> = {};
  for (const [path, v] of Object.entries(files)) bytes[path] = typeof v === 'string' ? strToU8(v) : base64ToBytes(v.base64);
  return readConfigurationZip(zipSync(bytes));
}

/** The {"files": {...}} form the console's PUT takes: text files as text, others as base64. */
export function configurationToFiles(doc: ConfigurationDoc): Record<string, FileValue> {
  const out: Record<string, FileValue> = {};
  out['cap.json'] = JSON.stringify(doc.manifest, null, 2) + '\n';
  for (const [name, rs] of Object.entries(doc.rulesets)) out[`rulesets/${name}.json`] = serializeRuleSet({ ...rs, name });
  for (const [path, data] of Object.entries(doc.files)) {
    let text: string | undefined;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(data);
    } catch {
      text = undefined;
    }
    out[path] = text !== undefined ? text : { base64: bytesToBase64(data) };
  }
  return out;
}
