// Builds the console UI into dist/, which cap-console serves at /. `npm run dev` proxies
// the API to a console on CAP_CONSOLE_URL (default http://127.0.0.1:8000).
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1500 },
  server: {
    proxy: { '/api': process.env.CAP_CONSOLE_URL ?? 'http://127.0.0.1:8000' },
  },
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
