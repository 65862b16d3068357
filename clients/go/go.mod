module github.com/loft-relay/loft/clients/go

go 1.23
