// MoESyntax
