import { startTestRedis } from '../helpers/redis';
import { startTestServer } from '../helpers/server';
import { apiSuite } from './api.suite';

apiSuite('the embedded PGlite database', async () => {
  const redis = await startTestRedis();
  const server = await startTestServer({ redisUrl: redis.url });
  return {
    server,
    async teardown() {
      await server.stop();
      await redis.stop();
    },
  };
});
