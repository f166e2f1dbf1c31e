/* cdc-apply: change events in Kafka -> a target PostgreSQL database. */
#include <stdio.h>
#include <string.h>

#include "apply.h"
#include "cdc/log.h"
#include "cdc/signals.h"

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
    volatile sig_atomic_t *stop = cdc_stop_on_signals();

    int status = apply_run(&cfg, stop);
    apply_config_free(&cfg);
    return status;
}
