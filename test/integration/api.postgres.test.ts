import { startTestPostgres } from '../helpers/postgres';
import { startTestRedis } from '../helpers/redis';
import { startTestServer } from '../helpers/server';
import { apiSuite } from './api.suite';

apiSuite('a PostgreSQL server', async () => {
  const [redis, pg] = await Promise.all([startTestRedis(), startTestPostgres()]);
  const server = await startTestServer({ redisUrl: redis.url, databaseUrl: await pg.createDatabase() });
  return {
    server,
    async teardown() {
      await server.stop();
      await Promise.all([pg.stop(), redis.stop()]);
    },
  };
});
