-- AlterTable
ALTER TABLE "execution_plan" ADD COLUMN     "bundle_id" TEXT;

-- AlterTable
ALTER TABLE "test_case" ADD COLUMN     "files" JSONB NOT NULL DEFAULT '[]';

-- CreateTable
CREATE TABLE "plan_files" (
    "plan_id" UUID NOT NULL,
    "files" JSONB NOT NULL,

    CONSTRAINT "plan_files_pkey" PRIMARY KEY ("plan_id")
);

-- CreateTable
CREATE TABLE "bundle" (
    "id" TEXT NOT NULL,
    "size_bytes" DOUBLE PRECISION NOT NULL,
    "files" INTEGER NOT NULL,
    "archive_bytes" DOUBLE PRECISION NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "bundle_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "execution_plan_bundle_id_idx" ON "execution_plan"("bundle_id");

-- AddForeignKey
ALTER TABLE "execution_plan" ADD CONSTRAINT "execution_plan_bundle_id_fkey" FOREIGN KEY ("bundle_id") REFERENCES "bundle"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "plan_files" ADD CONSTRAINT "plan_files_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "execution_plan"("id") ON DELETE CASCADE ON UPDATE CASCADE;
