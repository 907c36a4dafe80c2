-- CreateIndex
CREATE INDEX "execution_plan_finished_at_idx" ON "execution_plan"("finished_at");

-- CreateIndex
CREATE INDEX "artifact_storage_key_idx" ON "artifact"("storage_key");
