-- CreateEnum
CREATE TYPE "ImageStatus" AS ENUM ('MISSING', 'BUILDING', 'READY', 'FAILED');

-- AlterTable
ALTER TABLE "test_run" ADD COLUMN     "image_digest" TEXT;

-- CreateTable
CREATE TABLE "image" (
    "name" TEXT NOT NULL,
    "status" "ImageStatus" NOT NULL,
    "digest" TEXT,
    "size_bytes" DOUBLE PRECISION,
    "built_at" TIMESTAMPTZ(3),
    "error" TEXT,
    "host" TEXT,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "image_pkey" PRIMARY KEY ("name")
);
