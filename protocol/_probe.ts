export const X = 1 as const;
