/* cdc-verify: does the target hold what the source holds? */
#include <stdio.h>
#include <string.h>

#include "cdc/log.h"
#include "cdc/signals.h"
#include "verify.h"

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
    volatile sig_atomic_t *stop = cdc_stop_on_signals();

    int status = verify_run(&cfg, stdout, stop);
    verify_config_free(&cfg);
    return status;
}
