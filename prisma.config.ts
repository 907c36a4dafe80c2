// Used by the Prisma CLI only (`prisma generate`); the running program applies migrations itself.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
});
