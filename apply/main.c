/* cdc-apply: change events in Kafka -> a target PostgreSQL database. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "apply.h"
#include "cdc/log.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int main(int argc, char **argv)
{
    cdc_log_init("cdc-apply");
    apply_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[1024];
    cdc_cfg_result r = apply_config_load(&cfg, argc, argv, err, sizeof err);
    if (r != CDC_CFG_OK) {
        if (r == CDC_CFG_ERROR)
            fprintf(stderr, "cdc-apply: %s\n", err);
        apply_config_free(&cfg);
        return r == CDC_CFG_EXIT_OK ? 0 : 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = apply_run(&cfg, &stop_requested);
    apply_config_free(&cfg);
    return status;
}
