/** @module The package version, for `--version`, MCP server info and the relay hello. */
import { createRequire } from 'node:module';

const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };

/**
 * The package version, read once from package.json: two folders up both from `dist/util/` and from the
 * bundle `bin/nfltr.js` runs (`dist/bundle/`), so this file stays two levels deep.
 */
export const VERSION: string = pkg.version;
