/*
 * hookwrap: the measuring stand-in for an OCI hook, used by scripts/bench.sh.
 *
 *   hookwrap OUT COMMAND [ARGS...]
 *
 * Runs COMMAND (an absolute path; ARGS become its argv[1..]) with this process's stdin (the
 * container state runc writes), environment and stdout/stderr, waits for it, and appends one line
 * to OUT:
 *
 *   <wall time in ns> <peak RSS in KiB> <wait status> <user CPU in µs> <system CPU in µs>
 *
 * The wall time runs from before fork to after the wait: what the runtime pays for the hook
 * process, exec and dynamic loading included. The peak RSS is wait4's ru_maxrss, the largest of
 * the hook and the children it waited for (its setns child); the CPU times are wait4's too (the
 * hook and its waited-for children), which other work on the machine inflates far less than the
 * wall time. COMMAND gets MIGCAGE_PROFILE_T0, the CLOCK_MONOTONIC nanoseconds before the fork,
 * from which `MIGCAGE_PROFILE=FILE migcage hook` reports its start-up (src/profile.rs). It exits
 * as COMMAND did, so a failing hook still fails the container.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: hookwrap OUT COMMAND [ARGS...]\n");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char t0s[32];
	snprintf(t0s, sizeof t0s, "%lld", (long long)t0.tv_sec * 1000000000LL + t0.tv_nsec);
	setenv("MIGCAGE_PROFILE_T0", t0s, 1);
	pid_t pid = fork();
	if (pid < 0) {
		perror("hookwrap: fork");
		return 2;
	}
	if (pid == 0) {
		execv(argv[2], argv + 2);
		perror("hookwrap: exec");
		_exit(127);
	}
	int status = 0;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("hookwrap: wait4");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL +
		       (t1.tv_nsec - t0.tv_nsec);
	FILE *out = fopen(argv[1], "a");
	if (out) {
		long long ut = (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
		long long st = (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
		fprintf(out, "%lld %ld %d %lld %lld\n", ns, ru.ru_maxrss, status, ut, st);
		fclose(out);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}
