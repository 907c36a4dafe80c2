-- CreateEnum
CREATE TYPE "Role" AS ENUM ('VIEWER', 'SUBMITTER', 'ADMIN');

-- AlterTable
ALTER TABLE "execution_plan" ADD COLUMN     "submitted_by" TEXT,
ADD COLUMN     "submitted_by_token_id" UUID;

-- CreateTable
CREATE TABLE "api_token" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "role" "Role" NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_token_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "api_token_name_key" ON "api_token"("name");

-- CreateIndex
CREATE UNIQUE INDEX "api_token_secret_hash_key" ON "api_token"("secret_hash");

-- CreateIndex
CREATE INDEX "execution_plan_submitted_by_token_id_status_idx" ON "execution_plan"("submitted_by_token_id", "status");
