import path from 'node:path';
import { Router } from 'express';
import helmet from 'helmet';
import type { Config } from '../../config';
import { buildOpenApiDocument } from '../openapi/openapi-document';

/**
 * GET /api/openapi.json (the OpenAPI 3.1 document, no credentials: it holds no secret) and the reference
 * page at /docs: Swagger UI from the npm package swagger-ui-dist, served from here (no CDN) with helmet's
 * headers. The page's only scripts are the bundle and docs.js below, so helmet's default
 * Content-Security-Policy (`script-src 'self'`) holds; Swagger UI's inline styles are allowed by its default
 * `style-src 'self' https: 'unsafe-inline'`, its icons by `img-src 'self' data:`, "Try it out" by
 * `default-src 'self'` (same origin). The validator badge, which would call swagger.io, is off.
 */
const ASSETS = ['swagger-ui.css', 'swagger-ui-bundle.js', 'favicon-32x32.png', 'favicon-16x16.png'];

export function createDocsPage(config: Config): Router {
  const router = Router();
  const document = JSON.stringify(buildOpenApiDocument({ platforms: config.platforms }));
  router.get('/api/openapi.json', (_req, res) => {
    res.type('application/json').send(document);
  });

  // swagger-ui-dist's own getAbsoluteFSPath() is this directory
  const dist = path.dirname(require.resolve('swagger-ui-dist/package.json'));
  router.use('/docs', helmet());
  router.get('/docs', (_req, res) => {
    res.type('html').send(PAGE);
  });
  router.get('/docs/docs.js', (_req, res) => {
    res.type('application/javascript').send(SCRIPT);
  });
  for (const asset of ASSETS) {
    router.get(`/docs/${asset}`, (_req, res, next) => {
      res.sendFile(path.join(dist, asset), { maxAge: '1d' }, (error) => error && next(error));
    });
  }
  return router;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>meeboter API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs.js"></script>
</body>
</html>`;

const SCRIPT = `'use strict';
window.ui = SwaggerUIBundle({
  url: '/api/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
});
`;
