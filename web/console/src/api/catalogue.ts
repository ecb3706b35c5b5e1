// Where the editor gets the catalogue: the console's GET /api/v1/rules (base rules and the
// installed extensions' rules), else the catalogue.json the build wrote next to the UI
// (the base rules from `capctl rules --json`).
import { Catalogue, parseCatalogue } from '../model/catalogue';
import { getJson } from './client';

export async function loadCatalogue(): Promise<Catalogue> {
  try {
    return parseCatalogue(await getJson('/rules'));
  } catch {
    const res = await fetch('/catalogue.json');
    if (!res.ok) throw new Error(`the rule catalogue could not be loaded (${res.status})`);
    return parseCatalogue(await res.json());
  }
}
