/* libb.c (T7): the next definition of foo after liba.so; exported as
 * foo@@V1 through the version script libb.map, so that
 * dlvsym(RTLD_NEXT, "foo", "V1") from liba finds it.
 *   cc -O1 -g -shared -fPIC -Wl,--version-script=libb.map -o libb.so libb.c */
int foo(void) { return 2; }
