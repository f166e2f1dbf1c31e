/* cdc-verify: does the target hold what the source holds? */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cdc/log.h"
#include "verify.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    cdc_log_init("cdc-verify");
    verify_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[1024];
    cdc_cfg_result r = verify_config_load(&cfg, argc, argv, err, sizeof err);
    if (r != CDC_CFG_OK) {
        if (r == CDC_CFG_ERROR)
            fprintf(stderr, "cdc-verify: %s\n", err);
        verify_config_free(&cfg);
        return r == CDC_CFG_EXIT_OK ? 0 : VERIFY_ERROR;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = verify_run(&cfg, stdout, &stop_requested);
    verify_config_free(&cfg);
    return status;
}
