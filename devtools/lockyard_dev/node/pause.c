/* The pod sandbox's only process (what registry.k8s.io/pause does): hold the pod's namespaces,
 * reap orphans, exit at once on SIGINT/SIGTERM. Built with `gcc -static`, so the image needs
 * nothing else. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int signum) {
  (void)signum;
  _exit(0);
}

static void on_child(int signum) {
  (void)signum;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction action = {0};
  action.sa_handler = on_term;
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  action.sa_handler = on_child;
  action.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &action, NULL);
  for (;;) {
    pause();
  }
}
