/*
 * Escape-sequence stripping (see ansi.h). GCC and Clang emit SGR colour
 * (ESC [ ... m), erase-line (ESC [ K) and OSC 8 hyperlinks; a sequence cut
 * off at the end of the buffer is dropped whole.
 */
#include "ansi.h"

void ansi_strip(struct buf *b)
{
	size_t o = 0, i = 0, n = b->len;
	char *d = b->data;
	while (i < n) {
		if (d[i] != '\033' || i + 1 >= n) {
			if (d[i] == '\033') {
				i++;
				continue;
			}
			d[o++] = d[i++];
			continue;
		}
		if (d[i + 1] == '[') {
			i += 2;
			while (i < n && !((unsigned char)d[i] >= 0x40 && (unsigned char)d[i] <= 0x7e))
				i++;
			i++;
		} else if (d[i + 1] == ']') {
			i += 2;
			while (i < n && d[i] != '\a' && !(d[i] == '\033' && i + 1 < n && d[i + 1] == '\\'))
				i++;
			i += i < n && d[i] == '\a' ? 1 : 2;
		} else {
			i += 2;
		}
	}
	if (o > n)
		o = n;
	b->len = o;
	if (d)
		d[o] = '\0';
}
