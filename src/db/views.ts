// Moved to src/views/view.mappers.ts; kept for src/worker/executor.ts (another branch at the time of the
// move), which the attempts service takes off src/db.
export * from '../views/view.mappers';
