// Repositories and configurations through the console (GET/PUT .../configurations/NAME
// carry the configuration as {"files": {...}}).
import { ConfigurationDoc, configurationFromFiles, configurationToFiles, FileValue } from '../model/configuration';
import { ApiError, getJson, seg, sendJson } from './client';

export interface RevisionMeta {
  revision: number;
  sha256: string;
  author: string;
  message: string;
  created_at: string;
}

export interface LoadedConfiguration {
  doc: ConfigurationDoc;
  revision: number;
}

export function configPath(repo: string, name: string): string {
  return `${seg('repositories', repo, 'configurations', name)}`;
}

export async function loadConfiguration(repo: string, name: string, revision?: number): Promise<LoadedConfiguration> {
  const path = revision ? `${configPath(repo, name)}/revisions/${revision}` : configPath(repo, name);
  const a = await getJson<RevisionMeta & { files: Record<string, FileValue> }>(path);
  return { doc: configurationFromFiles(a.files ?? {}), revision: a.revision };
}

export interface SaveAnswer {
  revision: number;
  unchanged?: boolean;
  warnings?: string[];
}

/** Saves a revision; a configuration with errors comes back as ApiError 422 with every error. */
export function saveConfiguration(repo: string, name: string, doc: ConfigurationDoc, message = ''): Promise<SaveAnswer> {
  return sendJson<SaveAnswer>('PUT', configPath(repo, name), { files: configurationToFiles(doc), message });
}

export async function validateConfiguration(doc: ConfigurationDoc): Promise<{ valid: boolean; errors: string[]; warnings: string[] }> {
  return sendJson('POST', '/validate', { files: configurationToFiles(doc) });
}

export { ApiError };
