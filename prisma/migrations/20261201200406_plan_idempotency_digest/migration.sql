-- AlterTable
ALTER TABLE "execution_plan" ADD COLUMN     "idempotency_digest" TEXT;
