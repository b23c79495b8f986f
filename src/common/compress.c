/*
 * zstd helpers (see compress.h). Decompression streams into a capped buffer
 * rather than trusting the frame header's content size, since a hostile frame
 * may lie about it or omit it.
 */
#include "compress.h"

#include <errno.h>
#include <zstd.h>

int compress_zstd(const void *data, size_t n, int level, struct buf *out)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	if (!cctx)
		return -ENOMEM;
	int r = 0;
	size_t bound = ZSTD_compressBound(n);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	r = buf_reserve(out, bound);
	if (r >= 0) {
		size_t z = ZSTD_compress2(cctx, out->data + out->len, bound, data, n);
		if (ZSTD_isError(z))
			r = -EIO;
		else {
			out->len += z;
			out->data[out->len] = '\0';
		}
	}
	ZSTD_freeCCtx(cctx);
	return r;
}

int decompress_zstd(const void *data, size_t n, size_t max_out, struct buf *out)
{
	unsigned long long claimed = ZSTD_getFrameContentSize(data, n);
	if (claimed == ZSTD_CONTENTSIZE_ERROR)
		return -EBADMSG;
	if (claimed != ZSTD_CONTENTSIZE_UNKNOWN && claimed > max_out)
		return -EFBIG;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	if (!dctx)
		return -ENOMEM;
	/* Refuse frames that need a huge window: memory is bounded too. */
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27);
	ZSTD_inBuffer in = { data, n, 0 };
	size_t start = out->len, produced = 0, ret = 1;
	int r = 0;
	while (ret != 0) {
		size_t chunk = claimed != ZSTD_CONTENTSIZE_UNKNOWN && claimed - produced < 128 * 1024 ?
				       (size_t)(claimed - produced) + 1 :
				       128 * 1024;
		r = buf_reserve(out, chunk);
		if (r == -EFBIG && buf_reserve(out, 1) == 0) {
			/* Near out's own cap: use what is left of it, so that output
			 * that fits exactly is not refused for want of a spare byte. */
			size_t room = out->alloc - out->len - 1;
			chunk = room < chunk ? room : chunk;
			r = 0;
		}
		if (r < 0)
			break;
		ZSTD_outBuffer o = { out->data + out->len, chunk, 0 };
		ret = ZSTD_decompressStream(dctx, &o, &in);
		if (ZSTD_isError(ret)) {
			r = -EBADMSG;
			break;
		}
		out->len += o.pos;
		produced += o.pos;
		if (produced > max_out) {
			r = -EFBIG;
			break;
		}
		if (ret != 0 && in.pos == in.size && o.pos < chunk) {
			r = -EBADMSG;  /* truncated */
			break;
		}
	}
	if (r == 0 && in.pos != in.size)
		r = -EBADMSG;  /* trailing garbage */
	if (r < 0)
		out->len = start;
	if (out->data)
		out->data[out->len] = '\0';
	ZSTD_freeDCtx(dctx);
	return r;
}
