/*
 * The container driver's runner, compiled on the host (native-runner.ts) and bound read-only into
 * every sandbox at /run/orchestrator-runner; the same job as PERL_WAIT in runner-script.ts, which is
 * used where no C compiler is at hand (measured: this ~2 ms of CPU per run, perl's ~6.5 ms).
 *
 *   orch-runner STATUS_FILE STARTED_FD PROGRAM [ARG...]
 *
 * Writes "started\n" to STARTED_FD (when not empty) and closes it; runs PROGRAM with the default
 * disposition of SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP; waits for it (as the PID namespace's
 * pid 1 it also reaps every orphan meanwhile); writes STATUS_FILE (when not empty; through a
 * `.tmp` file renamed into place) with "exit N" or "signal N" and the "usage ..." line of
 * getrusage(RUSAGE_CHILDREN); exits with N, or 128 + N for a signal. Static: it needs nothing of the
 * image it runs in.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "[orchestrator] usage: orch-runner STATUS_FILE STARTED_FD PROGRAM [ARG...]\n");
    return 126;
  }
  const char *out = argv[1];
  const char *started = argv[2];
  if (started[0] != '\0') {
    int fd = atoi(started);
    if (write(fd, "started\n", 8) < 0) { /* the driver then reports a sandbox that did not start */ }
    close(fd);
  }
  const int dfl[] = {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP};
  for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++) signal(dfl[i], SIG_DFL);

  pid_t pid = fork();
  if (pid < 0) fprintf(stderr, "[orchestrator] fork failed: %s\n", strerror(errno));
  if (pid == 0) {
    execvp(argv[3], argv + 3);
    fprintf(stderr, "[orchestrator] cannot execute %s: %s\n", argv[3], strerror(errno));
    _exit(127);
  }
  int status = 126 << 8;
  /* as pid 1 every orphan is ours to reap (or it stays a zombie, counted in the pids limit) */
  const pid_t which = getpid() == 1 ? -1 : pid;
  if (pid > 0) {
    for (;;) {
      int st;
      pid_t w = waitpid(which, &st, 0);
      if (w == pid) {
        status = st;
        break;
      }
      if (w == -1 && errno != EINTR) break;
    }
  }
  const int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  char text[256];
  int n = sig ? snprintf(text, sizeof text, "signal %d\n", sig) : snprintf(text, sizeof text, "exit %d\n", WEXITSTATUS(status));
  struct rusage ru;
  if (getrusage(RUSAGE_CHILDREN, &ru) == 0) {
    n += snprintf(text + n, sizeof text - (size_t)n, "usage %lld %lld %ld %ld %ld %ld %ld\n",
                  (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
                  (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec,
                  ru.ru_maxrss, ru.ru_inblock, ru.ru_oublock, ru.ru_nvcsw, ru.ru_nivcsw);
  }
  if (out[0] != '\0') {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out) < (int)sizeof tmp) {
      int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ssize_t w = write(fd, text, (size_t)n);
        close(fd);
        if (w == n) rename(tmp, out);
      }
    }
  }
  return sig ? 128 + sig : WEXITSTATUS(status);
}
