// Where the editor gets the catalogue: the console's GET /api/v1/rules (the base rules),
// else the catalogue.json the build wrote next to the UI (`capctl rules --json`); plus the
// rules of every extension in the console's store, read from each extension's
// extension.json (its newest version).
import { strFromU8, unzipSync } from 'fflate';
import { Catalogue, parseCatalogue, RuleSpec } from '../model/catalogue';
import { getJson, request, seg } from './client';

interface StoredExtension {
  name: string;
  versions: { version: string }[];
}

/** The rules an extension zip declares, marked with the extension's name and version. */
export function extensionRules(zip: Uint8Array): RuleSpec[] {
  const files = unzipSync(zip);
  const manifest = files['extension.json'];
  if (!manifest) throw new Error('the zip has no extension.json');
  const doc = JSON.parse(strFromU8(manifest)) as { name: string; version: string; rules?: Record<string, unknown>[] };
  const cat = parseCatalogue({ rules: (doc.rules ?? []).map((r) => ({ group: doc.name, ...r })) });
  return cat.rules.map((r) => ({ ...r, extension: doc.name, extension_version: doc.version }));
}

async function storeRules(): Promise<RuleSpec[]> {
  const list = await getJson<{ extensions: StoredExtension[] }>('/extensions');
  const out: RuleSpec[] = [];
  for (const ext of list.extensions ?? []) {
    const newest = ext.versions[ext.versions.length - 1];
    if (!newest) continue;
    try {
      const res = await request('GET', seg('extensions', ext.name, newest.version));
      out.push(...extensionRules(new Uint8Array(await res.arrayBuffer())));
    } catch {
      // one unreadable extension does not hide the others
    }
  }
  return out;
}

export async function loadCatalogue(): Promise<Catalogue> {
  let base: Catalogue;
  let console = true;
  try {
    base = parseCatalogue(await getJson('/rules'));
  } catch {
    console = false;
    const res = await fetch('/catalogue.json');
    if (!res.ok) throw new Error(`the rule catalogue could not be loaded (${res.status})`);
    base = parseCatalogue(await res.json());
  }
  if (!console) return base;
  const known = new Set(base.rules.map((r) => r.name));
  const extra = (await storeRules().catch(() => [])).filter((r) => !known.has(r.name));
  return { rules: [...base.rules, ...extra] };
}
