-- AlterTable
ALTER TABLE "test_run" ADD COLUMN     "involuntary_context_switches" DOUBLE PRECISION,
ADD COLUMN     "read_bytes" DOUBLE PRECISION,
ADD COLUMN     "reported_metrics" JSONB NOT NULL DEFAULT '[]',
ADD COLUMN     "system_cpu_ms" DOUBLE PRECISION,
ADD COLUMN     "user_cpu_ms" DOUBLE PRECISION,
ADD COLUMN     "voluntary_context_switches" DOUBLE PRECISION,
ADD COLUMN     "write_bytes" DOUBLE PRECISION;
