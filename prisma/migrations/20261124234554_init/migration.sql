-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "TestType" AS ENUM ('UNIT', 'INTEGRATION', 'PERFORMANCE', 'SECURITY');

-- CreateEnum
CREATE TYPE "EnvironmentKind" AS ENUM ('CONTAINER', 'QEMU');

-- CreateEnum
CREATE TYPE "TestStatus" AS ENUM ('QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'TIMED_OUT', 'ERROR', 'CANCELLED');

-- CreateEnum
CREATE TYPE "PlanStatus" AS ENUM ('QUEUED', 'RUNNING', 'PASSED', 'FAILED', 'CANCELLED');

-- CreateEnum
CREATE TYPE "EnvironmentStatus" AS ENUM ('PROVISIONING', 'READY', 'BUSY', 'RESETTING', 'UNHEALTHY', 'RETIRED');

-- CreateEnum
CREATE TYPE "ArtifactKind" AS ENUM ('LOG', 'CORE_DUMP', 'FILE');

-- CreateTable
CREATE TABLE "execution_plan" (
    "id" UUID NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "priority" INTEGER NOT NULL,
    "status" "PlanStatus" NOT NULL DEFAULT 'QUEUED',
    "idempotency_key" TEXT,
    "test_count" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "cancelled_at" TIMESTAMPTZ(3),

    CONSTRAINT "execution_plan_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "test_case" (
    "id" UUID NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "plan_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "type" "TestType" NOT NULL,
    "script" TEXT NOT NULL,
    "timeout_seconds" INTEGER NOT NULL,
    "requirements" JSONB NOT NULL DEFAULT '{}',
    "services" JSONB NOT NULL DEFAULT '[]',
    "env" JSONB NOT NULL DEFAULT '[]',
    "artifact_paths" TEXT[],
    "max_retries" INTEGER NOT NULL,
    "priority" INTEGER NOT NULL,
    "pool" TEXT NOT NULL,
    "status" "TestStatus" NOT NULL DEFAULT 'QUEUED',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "environment_id" UUID,
    "queued_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "test_case_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "test_run" (
    "id" UUID NOT NULL,
    "test_id" UUID NOT NULL,
    "attempt" INTEGER NOT NULL,
    "environment_id" UUID,
    "worker_id" TEXT,
    "status" "TestStatus" NOT NULL,
    "exit_code" INTEGER,
    "signal" TEXT,
    "stdout" TEXT NOT NULL DEFAULT '',
    "stderr" TEXT NOT NULL DEFAULT '',
    "output_truncated" BOOLEAN NOT NULL DEFAULT false,
    "timed_out" BOOLEAN NOT NULL DEFAULT false,
    "duration_ms" DOUBLE PRECISION NOT NULL DEFAULT 0,
    "error_message" TEXT,
    "infrastructure" BOOLEAN NOT NULL DEFAULT false,
    "cpu_time_ms" DOUBLE PRECISION,
    "peak_memory_bytes" DOUBLE PRECISION,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "test_run_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "artifact" (
    "id" UUID NOT NULL,
    "run_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "kind" "ArtifactKind" NOT NULL,
    "size_bytes" DOUBLE PRECISION NOT NULL,
    "sha256" TEXT NOT NULL,
    "storage_key" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "artifact_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "environment" (
    "id" UUID NOT NULL,
    "pool" TEXT NOT NULL,
    "kind" "EnvironmentKind" NOT NULL,
    "status" "EnvironmentStatus" NOT NULL,
    "host" TEXT NOT NULL,
    "worker_id" TEXT,
    "arch" TEXT NOT NULL,
    "cpus" INTEGER NOT NULL,
    "memory_mb" INTEGER NOT NULL,
    "image" TEXT,
    "tags" TEXT[],
    "current_test_id" UUID,
    "tests_run" INTEGER NOT NULL DEFAULT 0,
    "failures" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "heartbeat_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "environment_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "worker" (
    "id" TEXT NOT NULL,
    "host" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "pools" TEXT[],
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "heartbeat_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "stopped_at" TIMESTAMPTZ(3),

    CONSTRAINT "worker_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "status_count" (
    "pool" TEXT NOT NULL,
    "status" "TestStatus" NOT NULL,
    "shard" INTEGER NOT NULL,
    "n" BIGINT NOT NULL,

    CONSTRAINT "status_count_pkey" PRIMARY KEY ("pool","status","shard")
);

-- CreateTable
CREATE TABLE "plan_status_count" (
    "plan_id" UUID NOT NULL,
    "status" "TestStatus" NOT NULL,
    "n" INTEGER NOT NULL,

    CONSTRAINT "plan_status_count_pkey" PRIMARY KEY ("plan_id","status")
);

-- CreateIndex
CREATE UNIQUE INDEX "execution_plan_idempotency_key_key" ON "execution_plan"("idempotency_key");

-- CreateIndex
CREATE INDEX "execution_plan_status_seq_idx" ON "execution_plan"("status", "seq");

-- CreateIndex
CREATE UNIQUE INDEX "execution_plan_seq_key" ON "execution_plan"("seq");

-- CreateIndex
CREATE INDEX "test_case_plan_id_seq_idx" ON "test_case"("plan_id", "seq");

-- CreateIndex
CREATE INDEX "test_case_plan_id_status_seq_idx" ON "test_case"("plan_id", "status", "seq");

-- CreateIndex
CREATE INDEX "test_case_status_pool_seq_idx" ON "test_case"("status", "pool", "seq");

-- CreateIndex
CREATE UNIQUE INDEX "test_case_seq_key" ON "test_case"("seq");

-- CreateIndex
CREATE UNIQUE INDEX "test_run_test_id_attempt_key" ON "test_run"("test_id", "attempt");

-- CreateIndex
CREATE INDEX "artifact_run_id_idx" ON "artifact"("run_id");

-- CreateIndex
CREATE INDEX "environment_pool_status_idx" ON "environment"("pool", "status");

-- CreateIndex
CREATE INDEX "environment_status_idx" ON "environment"("status");

-- CreateIndex
CREATE INDEX "worker_heartbeat_at_idx" ON "worker"("heartbeat_at");

-- AddForeignKey
ALTER TABLE "test_case" ADD CONSTRAINT "test_case_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "execution_plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "test_run" ADD CONSTRAINT "test_run_test_id_fkey" FOREIGN KEY ("test_id") REFERENCES "test_case"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "artifact" ADD CONSTRAINT "artifact_run_id_fkey" FOREIGN KEY ("run_id") REFERENCES "test_run"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "plan_status_count" ADD CONSTRAINT "plan_status_count_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "execution_plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Counters kept by statement triggers on test_case (not expressible in schema.prisma).
-- systemStatus and plan counts read these small tables instead of counting test_case: cheap with millions
-- of tests. Global counters are spread over 8 shards chosen at random per statement, so concurrent
-- transactions rarely queue on one row; upserts run in key order so they cannot deadlock each other.

CREATE FUNCTION "test_case_counts_insert"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s integer := floor(random() * 8)::integer;
BEGIN
  INSERT INTO "status_count" ("pool", "status", "shard", "n")
    SELECT "pool", "status", s, count(*) FROM new_rows GROUP BY "pool", "status" ORDER BY "pool", "status"
  ON CONFLICT ("pool", "status", "shard") DO UPDATE SET "n" = "status_count"."n" + EXCLUDED."n";
  INSERT INTO "plan_status_count" ("plan_id", "status", "n")
    SELECT "plan_id", "status", count(*) FROM new_rows GROUP BY "plan_id", "status" ORDER BY "plan_id", "status"
  ON CONFLICT ("plan_id", "status") DO UPDATE SET "n" = "plan_status_count"."n" + EXCLUDED."n";
  RETURN NULL;
END $$;

CREATE FUNCTION "test_case_counts_update"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s integer := floor(random() * 8)::integer;
BEGIN
  INSERT INTO "status_count" ("pool", "status", "shard", "n")
    SELECT "pool", "status", s, sum(d) FROM (
      SELECT "pool", "status", -1 AS d FROM old_rows UNION ALL SELECT "pool", "status", 1 FROM new_rows
    ) x GROUP BY "pool", "status" HAVING sum(d) <> 0 ORDER BY "pool", "status"
  ON CONFLICT ("pool", "status", "shard") DO UPDATE SET "n" = "status_count"."n" + EXCLUDED."n";
  INSERT INTO "plan_status_count" ("plan_id", "status", "n")
    SELECT "plan_id", "status", sum(d) FROM (
      SELECT "plan_id", "status", -1 AS d FROM old_rows UNION ALL SELECT "plan_id", "status", 1 FROM new_rows
    ) x GROUP BY "plan_id", "status" HAVING sum(d) <> 0 ORDER BY "plan_id", "status"
  ON CONFLICT ("plan_id", "status") DO UPDATE SET "n" = "plan_status_count"."n" + EXCLUDED."n";
  RETURN NULL;
END $$;

CREATE FUNCTION "test_case_counts_delete"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s integer := floor(random() * 8)::integer;
BEGIN
  INSERT INTO "status_count" ("pool", "status", "shard", "n")
    SELECT "pool", "status", s, -count(*) FROM old_rows GROUP BY "pool", "status" ORDER BY "pool", "status"
  ON CONFLICT ("pool", "status", "shard") DO UPDATE SET "n" = "status_count"."n" + EXCLUDED."n";
  -- a deleted plan's own counters go with it (ON DELETE CASCADE); only surviving plans are updated
  UPDATE "plan_status_count" p SET "n" = p."n" - x.c
    FROM (SELECT "plan_id", "status", count(*) AS c FROM old_rows GROUP BY "plan_id", "status") x
    WHERE p."plan_id" = x."plan_id" AND p."status" = x."status";
  RETURN NULL;
END $$;

CREATE TRIGGER "test_case_counts_insert" AFTER INSERT ON "test_case"
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "test_case_counts_insert"();
CREATE TRIGGER "test_case_counts_update" AFTER UPDATE ON "test_case"
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "test_case_counts_update"();
CREATE TRIGGER "test_case_counts_delete" AFTER DELETE ON "test_case"
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "test_case_counts_delete"();

-- Recomputes a plan's status from its counters under the plan's row lock and returns the plan with its
-- counts. Called after each change of a test has committed: whichever call takes the lock last sees every
-- committed change, so concurrent workers cannot leave a stale status behind. Mirrors planStatusFrom()
-- in src/domain/status.ts (a test checks they agree).
CREATE FUNCTION "refresh_plan"(p_id uuid) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  p "execution_plan";
  c jsonb;
  total bigint;
  queued bigint;
  running bigint;
  passed bigint;
  st "PlanStatus";
BEGIN
  PERFORM 1 FROM "execution_plan" WHERE "id" = p_id FOR UPDATE;
  IF NOT FOUND THEN RETURN NULL; END IF;
  SELECT coalesce(jsonb_object_agg("status", "n"), '{}'::jsonb),
         coalesce(sum("n"), 0),
         coalesce(sum("n") FILTER (WHERE "status" = 'QUEUED'), 0),
         coalesce(sum("n") FILTER (WHERE "status" = 'RUNNING'), 0),
         coalesce(sum("n") FILTER (WHERE "status" = 'PASSED'), 0)
    INTO c, total, queued, running, passed
    FROM "plan_status_count" WHERE "plan_id" = p_id AND "n" <> 0;
  SELECT * INTO p FROM "execution_plan" WHERE "id" = p_id;
  IF p."cancelled_at" IS NOT NULL THEN st := 'CANCELLED';
  ELSIF total > 0 AND queued = 0 AND running = 0 THEN st := CASE WHEN passed = total THEN 'PASSED' ELSE 'FAILED' END;
  ELSIF running > 0 OR total - queued - running > 0 THEN st := 'RUNNING';
  ELSE st := 'QUEUED';
  END IF;
  IF st IS DISTINCT FROM p."status" THEN
    UPDATE "execution_plan" SET
      "status" = st,
      "started_at" = CASE WHEN st IN ('QUEUED', 'CANCELLED') THEN "started_at" ELSE coalesce("started_at", now()) END,
      "finished_at" = CASE WHEN st IN ('PASSED', 'FAILED', 'CANCELLED') THEN coalesce("finished_at", now()) ELSE NULL END
    WHERE "id" = p_id RETURNING * INTO p;
  END IF;
  RETURN jsonb_build_object('plan', to_jsonb(p), 'counts', c);
END $$;
