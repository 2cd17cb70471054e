/*
 * The only C in the Strata FSAL: access to Ganesha's thread-local op_ctx,
 * which stable Rust cannot declare as an extern TLS variable.
 */
#include "config.h"
#include "fsal.h"

struct req_op_context *strata_get_op_ctx(void)
{
	return op_ctx;
}
