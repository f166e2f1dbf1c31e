/* cdc-capture: PostgreSQL logical replication -> Avro change events in Kafka. */
#include <stdio.h>
#include <string.h>

#include "capture.h"
#include "cdc/log.h"
#include "cdc/signals.h"

int main(int argc, char **argv)
{
    cdc_log_init("cdc-capture");
    capture_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[1024];
    cdc_cfg_result r = capture_config_load(&cfg, argc, argv, err, sizeof err);
    if (r != CDC_CFG_OK) {
        if (r == CDC_CFG_ERROR)
            fprintf(stderr, "cdc-capture: %s\n", err);
        capture_config_free(&cfg);
        return r == CDC_CFG_EXIT_OK ? 0 : 2;
    }
    volatile sig_atomic_t *stop = cdc_stop_on_signals();

    int status = capture_run(&cfg, stop);
    capture_config_free(&cfg);
    return status;
}
