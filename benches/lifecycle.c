/* One container's life as an engine drives it, timed: `RUNTIME create --bundle B --pid-file P
 * ID`, `RUNTIME start ID`, wait for the container's init to exit, `RUNTIME delete ID`. This
 * process is a child subreaper (as containerd's shim and conmon are), so the init, orphaned when
 * `create` exits, becomes its child and its exit is waited for, not polled.
 *
 * usage: lifecycle BUNDLE ID RUNTIME [ARG...]   prints the wall time in microseconds; exits
 * non-zero (with the failing step on stderr) when a step fails or the container's process does. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char **cmd(int argc, char **argv, const char *const *tail) {
  int n = 0;
  while (tail[n]) n++;
  char **v = calloc((size_t)(argc - 3 + n + 1), sizeof *v);
  int k = 0;
  for (int i = 3; i < argc; i++) v[k++] = argv[i];
  for (int i = 0; i < n; i++) v[k++] = (char *)tail[i];
  return v;
}

static int run(char **v) {
  pid_t p = fork();
  if (p < 0) return -1;
  if (p == 0) {
    execvp(v[0], v);
    _exit(127);
  }
  int st;
  if (waitpid(p, &st, 0) < 0) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: lifecycle BUNDLE ID RUNTIME [ARG...]\n");
    return 2;
  }
  const char *bundle = argv[1], *id = argv[2];
  char pidfile[4096];
  snprintf(pidfile, sizeof pidfile, "%s/init.pid", bundle);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct timespec a, b, s1, s2, s3;
  clock_gettime(CLOCK_MONOTONIC, &a);
  const char *create[] = {"create", "--bundle", bundle, "--pid-file", pidfile, id, NULL};
  if (run(cmd(argc, argv, create)) != 0) { fprintf(stderr, "lifecycle: create failed\n"); return 1; }
  FILE *f = fopen(pidfile, "r");
  int init = 0;
  if (!f || fscanf(f, "%d", &init) != 1) { fprintf(stderr, "lifecycle: no pid in %s\n", pidfile); return 1; }
  fclose(f);
  clock_gettime(CLOCK_MONOTONIC, &s1);
  const char *start[] = {"start", id, NULL};
  if (run(cmd(argc, argv, start)) != 0) { fprintf(stderr, "lifecycle: start failed\n"); return 1; }
  clock_gettime(CLOCK_MONOTONIC, &s2);
  int st = 0;
  if (waitpid(init, &st, 0) < 0) { perror("lifecycle: wait for the container"); return 1; }
  clock_gettime(CLOCK_MONOTONIC, &s3);
  const char *del[] = {"delete", id, NULL};
  if (run(cmd(argc, argv, del)) != 0) { fprintf(stderr, "lifecycle: delete failed\n"); return 1; }
  clock_gettime(CLOCK_MONOTONIC, &b);
#define US(x, y) (((y).tv_sec - (x).tv_sec) * 1e6 + ((y).tv_nsec - (x).tv_nsec) / 1e3)
  printf("%.0f %.0f %.0f %.0f %.0f\n", US(a, b), US(a, s1), US(s1, s2), US(s2, s3), US(s3, b));
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
