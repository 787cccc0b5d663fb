// Builds the OpenAPI 3.1 document served at /docs from the JSON schemas every route declares.
import type { FastifyInstance, RouteOptions } from 'fastify';

interface CollectedRoute {
  method: string;
  url: string;
  schema: Record<string, any>;
}

/** Collects routes as they are registered; call before any route is added. */
export function collectRoutes(app: FastifyInstance): CollectedRoute[] {
  const routes: CollectedRoute[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (method === 'HEAD' || !route.schema || (route.schema as any).hide) continue;
      routes.push({ method: method.toLowerCase(), url: route.url, schema: route.schema as Record<string, any> });
    }
  });
  return routes;
}

function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{subject}');
}

export function buildOpenApi(routes: CollectedRoute[], info: { title: string; version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const { schema } = route;
    const parameters: unknown[] = [];
    for (const [where, key] of [
      ['path', 'params'],
      ['query', 'querystring'],
    ] as const) {
      const props = schema[key]?.properties ?? {};
      for (const [name, prop] of Object.entries(props)) {
        parameters.push({ name: name === '*' ? 'subject' : name, in: where, required: where === 'path' || (schema[key]?.required ?? []).includes(name), schema: prop });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, body] of Object.entries(schema.response ?? {})) {
      responses[status] = { description: (body as any).description ?? `HTTP ${status}`, content: { 'application/json': { schema: body } } };
    }
    const path = openApiPath(route.url);
    paths[path] ??= {};
    paths[path]![route.method] = {
      summary: schema.summary,
      description: schema.description,
      tags: schema.tags,
      parameters,
      ...(schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: schema.body } } } } : {}),
      responses: Object.keys(responses).length ? responses : { 200: { description: 'OK' } },
    };
  }
  return { openapi: '3.1.0', info, paths };
}

declare module 'fastify' {
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    hide?: boolean;
  }
}
