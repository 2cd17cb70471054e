/* Headers bindgen reads for the Strata FSAL. */
#include "config.h"
#include "fsal.h"
#include "fsal_convert.h"
#include "FSAL/fsal_commonlib.h"
#include "FSAL/fsal_init.h"
#include "config_parsing.h"
#include "sal_data.h"

struct req_op_context *strata_get_op_ctx(void);
extern char *nfs_config_path;
