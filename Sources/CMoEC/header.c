// The C target's one translation unit: it compiles moec.h as C (every C compiler that includes
// it must accept it), and the Swift library imports the same declarations, so the functions it
// exports have exactly the header's types.
#include "moec.h"
